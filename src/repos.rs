//! Read the .repo files beside the manifest: enabled ids, variable substitution, gpgcheck/gpgkey.
