//! Post-processing steps that turn an installed root into an OSTree tree.
//! One file per concern; each step is a small function with its own test.
pub mod cached_run;
pub mod common;
pub mod dracut_fastcopy;
pub mod dracut_ldd;
pub mod dracut_zstd;
pub mod early_cpio;
pub mod final_steps;
pub mod fsutil;
pub mod kernel;
pub mod modes;
pub mod modules_load;
pub mod nsswitch;
pub mod opentrace;
pub mod passwd;
pub mod prepare_rootfs;
pub mod rpmdb;
pub mod runcache;
pub mod scripts;
pub mod tmpfiles;
pub mod treefile_steps;
