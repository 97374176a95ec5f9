mod loom_table;
