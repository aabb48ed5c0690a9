//! A transport's write-buffer water marks, as asyncio's `_FlowControlMixin`
//! keeps them: `set_write_buffer_limits(high=None, low=None)` takes any
//! numbers (floats too), applies the stock defaults with Python arithmetic,
//! and `get_write_buffer_limits()` returns the very objects it was given.
//! The transports compare their buffer sizes against an `f64` copy.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// asyncio's default high-water mark for a transport's write buffer.
const DEFAULT_HIGH_WATER: i64 = 64 * 1024;

pub(crate) struct WriteLimits {
    high: Py<PyAny>,
    low: Py<PyAny>,
    /// `high` and `low` as numbers, for the buffer-size checks.
    pub(crate) high_water: f64,
    pub(crate) low_water: f64,
}

impl WriteLimits {
    /// The defaults: 64 KiB and a quarter of it (as `new(None, None)`
    /// computes them, without the Python arithmetic on every connection).
    pub(crate) fn default(py: Python<'_>) -> Self {
        let low = DEFAULT_HIGH_WATER / 4;
        let Ok(high_obj) = DEFAULT_HIGH_WATER.into_pyobject(py);
        let Ok(low_obj) = low.into_pyobject(py);
        WriteLimits {
            high: high_obj.into_any().unbind(),
            low: low_obj.into_any().unbind(),
            high_water: DEFAULT_HIGH_WATER as f64,
            low_water: low as f64,
        }
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
        Ok(WriteLimits {
            high_water: high.extract()?,
            low_water: low.extract()?,
            high: high.unbind(),
            low: low.unbind(),
        })
    }

    /// `get_write_buffer_limits()`: (low, high).
    pub(crate) fn as_tuple(&self, py: Python<'_>) -> (Py<PyAny>, Py<PyAny>) {
        (self.low.clone_ref(py), self.high.clone_ref(py))
    }
}
