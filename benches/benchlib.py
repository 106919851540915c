"""What the Python benchmark scripts share: loopback ports and waiting for a server."""
import socket, sys, time


def free_port():
    """A loopback port free at the time of the call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    """Wait until something accepts connections on loopback `port`; exit the script if not."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit("server on port %d did not start within %d s" % (port, timeout))
