mod loom_counter;
