//! Broken endpoints on loopback, for the checks a remote store must pass: one where nothing
//! listens, one that accepts connections and never answers.

use std::net::{SocketAddr, TcpListener};

/// An address on loopback where nothing listens: connecting is refused at once.
pub fn refusing() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("testkit: binding a loopback port: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("testkit: the address of a loopback port: {e}"));
    drop(listener);
    addr
}

/// An address on loopback that accepts every connection and never sends a byte (a server that
/// hangs). The connections are held open until the test process exits.
pub fn silent() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("testkit: binding a loopback port: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("testkit: the address of a loopback port: {e}"));
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().collect();
        drop(held);
    });
    addr
}
