//! Policy evaluation (stub; filled in next).
