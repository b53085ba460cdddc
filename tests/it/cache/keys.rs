//! Which instructions a change misses, read from the build report.
