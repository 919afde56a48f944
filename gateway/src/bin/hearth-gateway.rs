//! `hearth-gateway init|run` (placeholder: the tunnel helper writes the commands).

fn main() {}
