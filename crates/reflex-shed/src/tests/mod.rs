mod loom_counter;
mod loom_steer;
mod loom_window;
