//! bollard over the SSH link: a hyper client whose connector opens a channel to the minion's
//! Docker socket for each new HTTP connection. hyper pools idle connections, so most calls
//! reuse an open channel and cost no round trip beyond the request itself.
//!
//! Also bollard over a local socket that is not there yet (Docker not started, or a typo):
//! bollard's own client refuses to be made then, where this one connects whenever a call needs
//! a new connection, so the minion is one that does not answer until the socket appears.

use super::ssh::SshLink;
use bollard::BollardRequest;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

/// Names bollard's request body type, which it only exposes through `BollardRequest`.
trait RequestBody {
    type Body;
}
impl<B> RequestBody for http::Request<B> {
    type Body = B;
}
type Body = <BollardRequest as RequestBody>::Body;

#[derive(Clone)]
struct ChannelConnector {
    link: Arc<SshLink>,
    socket: Arc<str>,
}

impl tower_service::Service<http::Uri> for ChannelConnector {
    type Response = TokioIo<super::pipe::ChannelStream>;
    type Error = super::MinionError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let (link, socket) = (self.link.clone(), self.socket.clone());
        Box::pin(async move { Ok(TokioIo::new(link.open_stream(&socket).await?)) })
    }
}

pub fn docker_over_ssh(
    link: Arc<SshLink>,
    socket: &str,
    timeout_secs: u64,
) -> Result<bollard::Docker, bollard::errors::Error> {
    let connector = ChannelConnector {
        link,
        socket: socket.into(),
    };
    docker_via(connector, timeout_secs)
}

/// Connects to a local socket at each new HTTP connection.
#[derive(Clone)]
struct SocketConnector {
    socket: Arc<str>,
}

impl tower_service::Service<http::Uri> for SocketConnector {
    type Response = TokioIo<tokio::net::UnixStream>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let socket = self.socket.clone();
        Box::pin(async move {
            Ok(TokioIo::new(
                tokio::net::UnixStream::connect(&*socket).await?,
            ))
        })
    }
}

/// bollard on a local socket that may not exist yet: connected when a call needs it.
pub fn docker_over_later_socket(
    socket: &str,
    timeout_secs: u64,
) -> Result<bollard::Docker, bollard::errors::Error> {
    docker_via(
        SocketConnector {
            socket: socket.into(),
        },
        timeout_secs,
    )
}

/// bollard on a hyper client over `connector`.
fn docker_via<C>(connector: C, timeout_secs: u64) -> Result<bollard::Docker, bollard::errors::Error>
where
    C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
{
    let client: Client<C, Body> = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector);
    let client = Arc::new(client);
    bollard::Docker::connect_with_custom_transport(
        move |request: BollardRequest| {
            let client = client.clone();
            async move {
                client
                    .request(request)
                    .await
                    .map_err(bollard::errors::Error::from)
            }
        },
        Some("http://docker.invalid"),
        timeout_secs,
        bollard::API_DEFAULT_VERSION,
    )
}
