//! The nemesis harness: a cluster of real node processes on loopback behind fault-injecting
//! proxies, concurrent recording clients, a seeded fault schedule, and the checks.

#![allow(dead_code)]

pub mod cluster;
pub mod faults;
pub mod proxy;
pub mod rng;
pub mod run;
pub mod workload;
