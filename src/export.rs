//! Export a commit into an archive repo that plain HTTP serves: pull, summary, signatures, static deltas.
