//! Scenario tests of the core, driven through [`Drain`] over in-memory pipes.

mod util;

mod scenarios;

mod linger;
