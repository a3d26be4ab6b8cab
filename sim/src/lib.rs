//! estafeta-sim (being written)
