//! Write a prepared rootfs into an OSTree repo as a commit (metadata, parent, ref, change detection helpers).
