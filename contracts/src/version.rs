//! Version records and RFC 6902 diffs of references.
