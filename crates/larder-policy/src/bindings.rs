//! Host bindings generated from the WIT contract in `policies/wit/`, one module per world.

/// The `eviction-policy` world.
pub(crate) mod eviction {
    wasmtime::component::bindgen!({
        path: "../../policies/wit",
        world: "eviction-policy",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}

/// The `admission-policy` world.
pub(crate) mod admission {
    wasmtime::component::bindgen!({
        path: "../../policies/wit",
        world: "admission-policy",
    });
}

/// The `path-normalizer` world.
pub(crate) mod normalize {
    wasmtime::component::bindgen!({
        path: "../../policies/wit",
        world: "path-normalizer",
    });
}
