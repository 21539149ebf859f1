//! Headway wire protocol.
