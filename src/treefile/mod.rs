//! The treefile: model, include/variable resolution, validation, serialization.
