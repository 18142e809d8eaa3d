//! Post-processing steps that turn an installed root into an OSTree tree.
//! One file per concern; each step is a small function with its own test.
pub mod final_steps;
pub mod kernel;
pub mod nsswitch;
pub mod passwd;
pub mod tmpfiles;
