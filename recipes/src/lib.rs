//! Recipes: the service definition format and its signed repository (see issue 5).
