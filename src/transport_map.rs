//! `loop._transports`: which fd each live transport uses, held weakly.
//!
//! The stock selector loop keeps a `weakref.WeakValueDictionary` here. Per
//! connection that costs an int key, a `KeyedRef` (a weakref subclass with
//! a key slot and a callback) and a Python dict slot. This map keeps an
//! `i32` and a plain weak reference per fd instead, with the same mapping
//! behaviour: a transport that is gone is not reported (`in`, `[]`, `get`,
//! `len`, iteration see only live ones). A dead entry stays until its fd is
//! registered again or the map is listed, so the map never outgrows the
//! fds in use.

use std::collections::HashMap;
use std::os::fd::RawFd;

use pyo3::exceptions::PyKeyError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple, PyWeakrefMethods, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use crate::gil_cell::GilCell;

#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct TransportMap {
    map: GilCell<HashMap<RawFd, Py<PyWeakrefReference>>>,
}

impl TransportMap {
    /// The live transport registered for `fd`, if any (`fd` not an fd
    /// number: none).
    fn live<'py>(&self, fd: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
        let py = fd.py();
        let fd: RawFd = fd.extract().ok()?;
        let weak = self.map.borrow_mut(py).get(&fd)?.clone_ref(py);
        weak.bind(py).upgrade()
    }

    /// Every live (fd, transport); forgets the dead entries.
    fn entries<'py>(&self, py: Python<'py>) -> Vec<(RawFd, Bound<'py, PyAny>)> {
        let weaks: Vec<(RawFd, Py<PyWeakrefReference>)> = self
            .map
            .borrow_mut(py)
            .iter()
            .map(|(fd, w)| (*fd, w.clone_ref(py)))
            .collect();
        let mut live = Vec::with_capacity(weaks.len());
        let mut dead = Vec::new();
        for (fd, weak) in weaks {
            match weak.bind(py).upgrade() {
                Some(obj) => live.push((fd, obj)),
                None => dead.push(fd),
            }
        }
        if !dead.is_empty() {
            let removed: Vec<_> = {
                let mut map = self.map.borrow_mut(py);
                dead.iter().filter_map(|fd| map.remove(fd)).collect()
            };
            drop(removed); // with the map released
        }
        live.sort_unstable_by_key(|(fd, _)| *fd);
        live
    }

    fn take(&self, fd: &Bound<'_, PyAny>) -> Option<Py<PyAny>> {
        let py = fd.py();
        let fd: RawFd = fd.extract().ok()?;
        let weak = self.map.borrow_mut(py).remove(&fd)?;
        let obj = weak.bind(py).upgrade().map(Bound::unbind);
        drop(weak);
        obj
    }
}

#[pymethods]
impl TransportMap {
    #[new]
    fn new() -> Self {
        TransportMap {
            map: GilCell::new(HashMap::new()),
        }
    }

    fn __getitem__(&self, fd: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        self.live(fd)
            .map(Bound::unbind)
            .ok_or_else(|| PyKeyError::new_err(fd.clone().unbind()))
    }

    fn __setitem__(&self, fd: RawFd, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let weak = PyWeakrefReference::new(transport)?.unbind();
        let old = self.map.borrow_mut(transport.py()).insert(fd, weak);
        drop(old); // with the map released
        Ok(())
    }

    fn __delitem__(&self, fd: &Bound<'_, PyAny>) -> PyResult<()> {
        match self.take(fd) {
            Some(_) => Ok(()),
            None => Err(PyKeyError::new_err(fd.clone().unbind())),
        }
    }

    fn __contains__(&self, fd: &Bound<'_, PyAny>) -> bool {
        self.live(fd).is_some()
    }

    fn __len__(&self, py: Python<'_>) -> usize {
        self.entries(py).len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let fds: Vec<RawFd> = self.entries(py).into_iter().map(|(fd, _)| fd).collect();
        Ok(PyList::new(py, fds)?.try_iter()?.into_any())
    }

    #[pyo3(signature = (fd, default=None))]
    fn get(&self, fd: &Bound<'_, PyAny>, default: Option<Py<PyAny>>) -> Py<PyAny> {
        match self.live(fd) {
            Some(obj) => obj.unbind(),
            None => default.unwrap_or_else(|| fd.py().None()),
        }
    }

    /// `dict.pop`: the live transport for `fd`, removed; else `default`
    /// when given, else KeyError.
    #[pyo3(signature = (fd, *default))]
    fn pop(&self, fd: &Bound<'_, PyAny>, default: &Bound<'_, PyTuple>) -> PyResult<Py<PyAny>> {
        if let Some(obj) = self.take(fd) {
            return Ok(obj);
        }
        match default.len() {
            0 => Err(PyKeyError::new_err(fd.clone().unbind())),
            1 => Ok(default.get_item(0)?.unbind()),
            n => Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "pop expected at most 2 arguments, got {}",
                n + 1
            ))),
        }
    }

    fn keys<'py>(&self, py: Python<'py>) -> Vec<RawFd> {
        self.entries(py).into_iter().map(|(fd, _)| fd).collect()
    }

    fn values<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyAny>> {
        self.entries(py).into_iter().map(|(_, t)| t).collect()
    }

    fn items<'py>(&self, py: Python<'py>) -> Vec<(RawFd, Bound<'py, PyAny>)> {
        self.entries(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(map) = self.map.peek_for_gc() {
            for weak in map.values() {
                visit.call(weak)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = std::mem::take(&mut *self.map.borrow_mut(py));
            drop(taken);
        });
    }
}
