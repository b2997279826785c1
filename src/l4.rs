//! `mode tcp`: each client connection is balanced on its own and its bytes
//! are copied both ways unchanged; a half-close on one side is passed on.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::runtime::Frontend;

pub async fn serve(
    mut client: TcpStream,
    peer: SocketAddr,
    fe: Arc<Frontend>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(backend) = fe.backend.clone() else {
        return;
    };
    let slot = match backend.take().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(frontend = %fe.name, %peer, error = %e, "no server for tcp connection");
            return;
        }
    };
    let addr = slot.server.addr;
    let connect = TcpStream::connect(addr);
    let server = match backend.timeouts.connect {
        Some(t) => match tokio::time::timeout(t, connect).await {
            Ok(r) => r,
            Err(_) => return,
        },
        None => connect.await,
    };
    let Ok(mut server) = server else { return };
    let _ = server.set_nodelay(true);
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut client, &mut server) => {
            if let Err(e) = r {
                tracing::debug!(frontend = %fe.name, %peer, error = %e, "tcp session ended with an error");
            }
        }
        _ = crate::proxy::stopping(&mut shutdown) => {}
    }
    drop(slot);
}
