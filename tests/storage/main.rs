//! The storage tests, on every backend: the contract every adapter keeps (`contract`), and
//! recognition's own connections and batched reads (`recognition`). A backend that is not
//! configured is reported as ignored.

mod audit;
mod contract;
mod recognition;
