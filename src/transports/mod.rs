//! Transports by kind.

pub(crate) mod datagram;
