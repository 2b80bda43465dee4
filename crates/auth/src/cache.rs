//! A watch-fed, in-memory copy of backend prefixes (being written).
