//! pio compiler
