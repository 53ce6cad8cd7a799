//! End-to-end and repository-wide tests for swarm.
