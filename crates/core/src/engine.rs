//! Use cases (stub; filled in next).
