//! Minimal IPv4/IPv6 header views for selector checks and routing. IMPLEMENTATION: fs-esp owner.
