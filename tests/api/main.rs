//! HTTP integration tests: the real server on 127.0.0.1:0 with the shipped model, real requests over
//! loopback, images the tests generate (and AT&T faces when real data is configured).

#[path = "../common/mod.rs"]
mod common;
mod helpers;
mod hostile;

mod concurrency;
mod crash;
mod enrolment;
mod errors;
mod faults;
mod jobs;
mod keys;
mod quality;
mod real_enrolment;
mod real_faces;
mod real_signatures;
mod replicas;
mod ui;
mod verify_embed;
