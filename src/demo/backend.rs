//! The demo backend: HAProxy's classic "codename creator" gRPC service.
//!
//! `GetCodename` answers one random two-word codename ("Bold Badger") for a
//! category; `KeepGettingCodenames` streams one every 250 ms and switches
//! category whenever the client sends a new `NameRequest` on the same
//! stream. Every response carries `x-backend: <name>` (for the stream, in
//! the response headers), so the client can show who answered.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::{Request, Response, Status, Streaming};

use super::pb::codename_creator_server::{CodenameCreator, CodenameCreatorServer};
use super::pb::{NameRequest, NameResult};

/// Response metadata naming the backend that answered.
pub const BACKEND_HEADER: &str = "x-backend";

/// How often `KeepGettingCodenames` sends a name.
pub const STREAM_INTERVAL: Duration = Duration::from_millis(250);

/// The categories with their own word lists (others use a generic list).
pub const CATEGORIES: [&str; 4] = ["animals", "birds", "fish", "cities"];

const ADJECTIVES: [&str; 24] = [
    "Bold", "Brave", "Calm", "Clever", "Crimson", "Daring", "Eager", "Fierce", "Gentle", "Golden",
    "Hidden", "Jolly", "Lucky", "Mighty", "Nimble", "Quiet", "Rapid", "Silent", "Silver", "Swift",
    "Tidy", "Velvet", "Wild", "Zesty",
];
const ANIMALS: [&str; 16] = [
    "Badger", "Bear", "Beaver", "Bison", "Camel", "Coyote", "Fox", "Gecko", "Jaguar", "Koala",
    "Lynx", "Moose", "Otter", "Panda", "Tiger", "Wolf",
];
const BIRDS: [&str; 16] = [
    "Albatross",
    "Condor",
    "Crane",
    "Falcon",
    "Finch",
    "Heron",
    "Hawk",
    "Kestrel",
    "Magpie",
    "Osprey",
    "Owl",
    "Pelican",
    "Puffin",
    "Raven",
    "Robin",
    "Swallow",
];
const FISH: [&str; 16] = [
    "Barracuda",
    "Carp",
    "Cod",
    "Eel",
    "Flounder",
    "Grouper",
    "Haddock",
    "Herring",
    "Mackerel",
    "Marlin",
    "Perch",
    "Pike",
    "Salmon",
    "Sardine",
    "Trout",
    "Tuna",
];
const CITIES: [&str; 16] = [
    "Amsterdam",
    "Berlin",
    "Cairo",
    "Dublin",
    "Havana",
    "Istanbul",
    "Kyoto",
    "Lima",
    "Lisbon",
    "Nairobi",
    "Oslo",
    "Paris",
    "Prague",
    "Quito",
    "Seoul",
    "Vienna",
];
const THINGS: [&str; 16] = [
    "Anchor", "Arrow", "Beacon", "Comet", "Compass", "Engine", "Harbor", "Lantern", "Meteor",
    "Nebula", "Pebble", "Quasar", "Rocket", "Summit", "Thunder", "Voyager",
];

/// The nouns codenames of `category` end with (case-insensitive; unknown
/// categories share a generic list).
pub fn category_nouns(category: &str) -> &'static [&'static str] {
    match category.trim().to_ascii_lowercase().as_str() {
        "animals" | "animal" => &ANIMALS,
        "birds" | "bird" => &BIRDS,
        "fish" | "fishes" => &FISH,
        "cities" | "city" => &CITIES,
        _ => &THINGS,
    }
}

/// A random codename for `category`, e.g. "Bold Badger" for "animals".
pub fn codename(category: &str) -> String {
    let nouns = category_nouns(category);
    let adjective = ADJECTIVES[fastrand::usize(..ADJECTIVES.len())];
    let noun = nouns[fastrand::usize(..nouns.len())];
    format!("{adjective} {noun}")
}

/// The CodenameCreator service of one demo backend.
#[derive(Debug, Clone)]
pub struct CodenameBackend {
    name: MetadataValue<Ascii>,
}

impl CodenameBackend {
    /// A backend that answers as `name` (sent in `x-backend`).
    pub fn new(name: &str) -> io::Result<Self> {
        let name = MetadataValue::try_from(name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Self { name })
    }

    fn respond<T>(&self, message: T) -> Response<T> {
        let mut response = Response::new(message);
        response
            .metadata_mut()
            .insert(BACKEND_HEADER, self.name.clone());
        response
    }
}

#[tonic::async_trait]
impl CodenameCreator for CodenameBackend {
    async fn get_codename(
        &self,
        request: Request<NameRequest>,
    ) -> Result<Response<NameResult>, Status> {
        let name = codename(&request.get_ref().category);
        Ok(self.respond(NameResult { name }))
    }

    type KeepGettingCodenamesStream = ReceiverStream<Result<NameResult, Status>>;

    async fn keep_getting_codenames(
        &self,
        request: Request<Streaming<NameRequest>>,
    ) -> Result<Response<Self::KeepGettingCodenamesStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            // Nothing to name before the first request says which category.
            let mut category = match inbound.message().await {
                Ok(Some(first)) => first.category,
                _ => return,
            };
            let mut ticker = tokio::time::interval(STREAM_INTERVAL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    message = inbound.message() => match message {
                        Ok(Some(next)) => category = next.category,
                        // The client finished (or went away): end the call.
                        Ok(None) | Err(_) => break,
                    },
                    _ = ticker.tick() => {
                        let name = codename(&category);
                        if tx.send(Ok(NameResult { name })).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Ok(self.respond(ReceiverStream::new(rx)))
    }
}

/// A running demo backend; dropping it stops the server too.
#[derive(Debug)]
pub struct BackendHandle {
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl BackendHandle {
    /// Stops accepting, lets calls in flight finish for up to `grace`, then
    /// stops the server.
    pub async fn shutdown(mut self, grace: Duration) {
        self.shutdown.take();
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(grace, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

impl Drop for BackendHandle {
    fn drop(&mut self) {
        // Dropping the sender is the shutdown signal.
        self.shutdown.take();
    }
}

/// Starts a demo backend named `name` on `addr` (port 0 picks a free port)
/// and returns the bound address.
pub async fn spawn_backend(
    addr: SocketAddr,
    name: &str,
) -> io::Result<(SocketAddr, BackendHandle)> {
    let service = CodenameCreatorServer::new(CodenameBackend::new(name)?);
    // SO_REUSEADDR: the demo's fixed ports (50051..) sit in Linux's ephemeral
    // range, where a TIME_WAIT connection can hold them for a minute.
    let listener = tokio::net::TcpListener::from_std(crate::listener::bind(addr, false)?)?;
    let local = listener.local_addr()?;
    let incoming = TcpListenerStream::new(listener);
    let (tx, rx) = oneshot::channel::<()>();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::warn!(backend = %name, error = %e, "demo backend stopped");
        }
    });
    Ok((
        local,
        BackendHandle {
            shutdown: Some(tx),
            task: Some(task),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noun(name: &str) -> String {
        let (_, noun) = name.split_once(' ').expect("two words");
        noun.to_owned()
    }

    #[test]
    fn codenames_use_the_category_lists() {
        for _ in 0..50 {
            let name = codename("animals");
            let (adjective, _) = name.split_once(' ').expect("two words");
            assert!(ADJECTIVES.contains(&adjective));
            assert!(ANIMALS.contains(&noun(&name).as_str()));
        }
        assert!(CITIES.contains(&noun(&codename("Cities")).as_str()));
        assert!(THINGS.contains(&noun(&codename("spaceships")).as_str()));
        assert_eq!(category_nouns("birds"), &BIRDS);
    }
}
