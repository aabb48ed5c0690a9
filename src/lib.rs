//! `ferroloop._ferroloop`: the native half of ferroloop's asyncio event loop.
//! One module per asyncio concept; the engine (queues, heap, poller) lives
//! in the `ferroloop-engine` crate, free of Python.

mod call_args;
mod context;

mod debug;
mod extra_info;
mod fast_methods;
#[cfg(feature = "faults")]
mod faults_py;
mod fd_watchers;
mod gil_cell;
mod handle_alloc;
mod handle_lock;
mod handles;
mod iteration;
mod loop_core;
mod nodelay;
mod pyhelpers;
mod queued_call;
mod read_buffer;
mod read_into_bytes;
mod read_reserve;
mod run_loop;
mod sock_calls;
mod sock_dgram;
mod sock_waiter;
mod sockaddr;
mod spawn_channel;
mod state;
mod stream_delivery;
mod stream_direct;
mod timer_heap;
mod tls_protocol;
mod tls_read;
mod transport_map;
mod transports;
mod virtual_time;
mod writable_buffer;
mod write_limits;

use pyo3::prelude::*;

#[pymodule]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<loop_core::LoopCore>()?;
    m.add_class::<handles::Handle>()?;
    handle_alloc::install(m.py());
    m.add_function(wrap_pyfunction!(fast_methods::_install_fast_methods, m)?)?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<transports::socket::SocketTransport>()?;
    m.add_class::<transports::datagram::DatagramTransport>()?;
    m.add_class::<transport_map::TransportMap>()?;
    m.add_function(wrap_pyfunction!(sock_calls::recv_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_calls::send_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_calls::recv_into_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_calls::read_fd, m)?)?;
    m.add_function(wrap_pyfunction!(sock_dgram::recvfrom_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_dgram::recvfrom_into_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_dgram::sendto_nowait, m)?)?;
    m.add_function(wrap_pyfunction!(sock_dgram::sock_wait_recvfrom, m)?)?;
    m.add_function(wrap_pyfunction!(sock_dgram::sock_wait_recvfrom_into, m)?)?;
    m.add_function(wrap_pyfunction!(sock_dgram::sock_wait_sendto, m)?)?;
    m.add_class::<tls_protocol::TlsProtocolCore>()?;
    m.add_function(wrap_pyfunction!(tls_protocol::tls_app_write, m)?)?;
    m.add_class::<spawn_channel::SpawnChannel>()?;
    m.add_function(wrap_pyfunction!(spawn_channel::_spawn_channel, m)?)?;
    m.add_function(wrap_pyfunction!(spawn_channel::_deliver_spawned, m)?)?;
    m.add_function(wrap_pyfunction!(virtual_time::_virtual_enable, m)?)?;
    m.add_function(wrap_pyfunction!(virtual_time::_virtual_state, m)?)?;
    m.add_function(wrap_pyfunction!(virtual_time::_virtual_set, m)?)?;
    m.add_function(wrap_pyfunction!(virtual_time::_virtual_external, m)?)?;
    #[cfg(feature = "faults")]
    faults_py::install(m)?;
    Ok(())
}
