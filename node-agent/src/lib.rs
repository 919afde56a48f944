//! `hearth-node`: the agent a volunteer runs on a home server (see issue 4).
