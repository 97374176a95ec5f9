#[cfg(loom)]
mod loom_table;
#[cfg(not(loom))]
mod table;
