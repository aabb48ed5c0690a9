//! Transports by kind.

pub(crate) mod datagram;
pub(crate) mod socket;
