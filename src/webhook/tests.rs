//! Handler tests with a fake sink.
