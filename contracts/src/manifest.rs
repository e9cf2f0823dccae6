//! The `bver.manifest.json` capability contract of a bundle.
