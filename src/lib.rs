//! The eci facade (being built): one crate that other projects link against.
