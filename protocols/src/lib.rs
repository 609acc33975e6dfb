//! Agora wire types.
