//! A transport's write-buffer water marks, as asyncio's `_FlowControlMixin`
//! keeps them: `set_write_buffer_limits(high=None, low=None)` takes any
//! numbers (floats too), applies the stock defaults with Python arithmetic,
//! and `get_write_buffer_limits()` returns the very objects it was given.
//! The transports compare their buffer sizes against an `f64` copy.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// asyncio's default high-water mark for a transport's write buffer.
const DEFAULT_HIGH_WATER: i64 = 64 * 1024;
/// ... and its low-water mark, a quarter of it (as `new(None, None)`
/// computes it).
const DEFAULT_LOW_WATER: i64 = DEFAULT_HIGH_WATER / 4;

/// None: the defaults, which take no memory beyond the pointer (an idle
/// connection holds no int objects for them, made only when asked for).
pub(crate) struct WriteLimits(Option<Box<Custom>>);

/// Limits given to `set_write_buffer_limits`.
struct Custom {
    /// The objects it was given (after its arithmetic).
    high: Py<PyAny>,
    low: Py<PyAny>,
    /// `high` and `low` as numbers, for the buffer-size checks.
    high_water: f64,
    low_water: f64,
}

impl WriteLimits {
    /// The defaults: 64 KiB and a quarter of it (as `new(None, None)`
    /// computes them, without the Python arithmetic on every connection).
    pub(crate) fn default(_py: Python<'_>) -> Self {
        WriteLimits(None)
    }

    /// Above this many buffered bytes, the protocol is paused.
    pub(crate) fn high_water(&self) -> f64 {
        self.0
            .as_ref()
            .map_or(DEFAULT_HIGH_WATER as f64, |c| c.high_water)
    }

    /// At or below this many, a paused protocol is resumed.
    pub(crate) fn low_water(&self) -> f64 {
        self.0
            .as_ref()
            .map_or(DEFAULT_LOW_WATER as f64, |c| c.low_water)
    }

    /// `_FlowControlMixin._set_write_buffer_limits(high, low)`: the same
    /// defaults, arithmetic and ValueError.
    pub(crate) fn new(
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let high = match (high, &low) {
            (Some(high), _) => high,
            (None, None) => DEFAULT_HIGH_WATER.into_pyobject(py)?.into_any(),
            (None, Some(low)) => low.mul(4)?,
        };
        let low = match low {
            Some(low) => low,
            None => high.floor_div(4)?,
        };
        if !(high.ge(&low)? && low.ge(0)?) {
            return Err(PyValueError::new_err(format!(
                "high ({}) must be >= low ({}) must be >= 0",
                high.repr()?,
                low.repr()?
            )));
        }
        Ok(WriteLimits(Some(Box::new(Custom {
            high_water: high.extract()?,
            low_water: low.extract()?,
            high: high.unbind(),
            low: low.unbind(),
        }))))
    }

    /// `get_write_buffer_limits()`: (low, high).
    pub(crate) fn as_tuple(&self, py: Python<'_>) -> (Py<PyAny>, Py<PyAny>) {
        match &self.0 {
            Some(c) => (c.low.clone_ref(py), c.high.clone_ref(py)),
            None => {
                let int = |v: i64| {
                    let Ok(int) = v.into_pyobject(py);
                    int.into_any().unbind()
                };
                (int(DEFAULT_LOW_WATER), int(DEFAULT_HIGH_WATER))
            }
        }
    }
}
