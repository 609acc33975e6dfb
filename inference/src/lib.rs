//! Models served on the Agora mesh, built on burn. Filled by the inference issue.
