//! The compose pipeline: runs the stages in order, handing typed values on.
