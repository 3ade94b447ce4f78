//! Anti-replay sliding window (RFC 4303 3.4.3, appendix A2 for ESN). IMPLEMENTATION: fs-esp owner.
