mod loom_breaker;
