//! `hearth-sim`: a simulated fleet of homes driven through the real cores (see issue 7).
