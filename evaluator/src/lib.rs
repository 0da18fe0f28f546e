//! libtorch evaluator.
