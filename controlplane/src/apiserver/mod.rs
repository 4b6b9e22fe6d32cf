//! The Kubernetes-compatible API server: HTTPS with client-certificate and bearer-token
//! authentication, discovery, and the REST verbs on the resources of its [`registry::Registry`],
//! stored in etcd through [`crate::storage`].

pub mod admission;
pub mod admission_policies;
pub mod allocations;
pub mod api_server_leases;
pub mod apply;
pub mod custom_resources;
pub mod discovery;
pub mod eviction;
pub mod gc;
pub mod handlers;
pub mod ipam_repair;
pub mod logs;
pub mod machinery;
pub mod meta;
pub mod negotiation;
pub mod node_proxy;
pub mod openapi;
pub mod query;
pub mod registry;
pub mod request_info;
pub use flotilla_apimachinery::selectors;
pub mod status;
pub mod strategic_merge;
pub mod streaming;
pub mod subresources;
pub mod system_services;
pub mod tables;
pub mod token_request;
pub mod warnings;
pub mod watch;
pub mod webhooks;

use std::{net::SocketAddr, sync::Arc};

use axum::{
    body::Body,
    response::{IntoResponse as _, Response},
};
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt as _, Limited};
use hyper_util::{rt::TokioExecutor, rt::TokioIo, server::conn::auto};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{
    auth::{
        Tokens, User,
        authorizer::Authorizer,
        impersonation::{self, Refusal},
        service_accounts::{self, TokenIssuer},
        user_from_certificate,
    },
    storage::Store,
};
use handlers::{DeleteOptions, MAX_BODY_BYTES, Scope, Written};
use negotiation::{Encoding, decode_body, decode_optional};
use query::{Query, rendering};
use registry::{
    Registry, Resource, Subresource, core::namespace, scheduling::priority_class,
    storage::storage_class,
};
use status::ApiError;

/// The StorageClass every cluster starts with, its default.
pub const DEFAULT_STORAGE_CLASS: &str = "local-path";

/// The default StorageClass `local-path` (k3s ships the same): claims that name no class get a
/// directory on the node their first pod is scheduled to, made by that node's agent, deleted
/// with the claim. Created when absent, as k3s re-applies its manifest at start.
fn default_storage_class() -> Value {
    use crate::controllers::persistent_volume::matching::{
        LOCAL_PATH_PROVISIONER, WAIT_FOR_FIRST_CONSUMER,
    };
    json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": DEFAULT_STORAGE_CLASS,
                     "annotations": {storage_class::IS_DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": WAIT_FOR_FIRST_CONSUMER,
    })
}

/// The API server's shared state.
#[derive(Clone)]
pub struct ApiServer {
    pub(crate) store: Store,
    pub(crate) registry: Arc<Registry>,
    tokens: Arc<Tokens>,
    advertise: String,
    kubelet_tls: Option<Arc<rustls::ClientConfig>>,
    ipam: Option<Arc<allocations::Ipam>>,
    // The cluster DNS Service's ClusterIP and where the DNS server answers.
    cluster_dns: Option<(std::net::Ipv4Addr, SocketAddr)>,
    pub(crate) admission: admission::Admission,
    /// The OpenAPI documents, built once for each set of kinds.
    openapi: Arc<openapi::Documents>,
    /// The Node and RBAC authorizers every request goes through.
    pub(crate) authorizer: Authorizer,
    /// Signs and checks ServiceAccount tokens (None: no TokenRequest, no such tokens accepted).
    pub(crate) service_account_tokens: Option<Arc<TokenIssuer>>,
    /// The admission webhooks writes are put to.
    pub(crate) webhooks: Arc<webhooks::Webhooks>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("advertise", &self.advertise)
            .finish_non_exhaustive()
    }
}

impl ApiServer {
    /// An API server on `store`, accepting `tokens`, reachable at `advertise` (host:port).
    pub fn new(store: Store, tokens: Tokens, advertise: String) -> Self {
        Self {
            store,
            registry: Arc::new(Registry::new()),
            tokens: Arc::new(tokens),
            advertise,
            kubelet_tls: None,
            ipam: None,
            cluster_dns: None,
            admission: admission::Admission::default(),
            openapi: Arc::default(),
            authorizer: Authorizer::default(),
            service_account_tokens: None,
            webhooks: Arc::default(),
        }
    }

    /// Put writes to the webhooks of these configurations.
    pub fn with_webhooks(mut self, webhooks: Arc<webhooks::Webhooks>) -> Self {
        self.webhooks = webhooks;
        self
    }

    /// Issue ServiceAccount tokens with `issuer` and accept them as bearer tokens.
    pub fn with_service_account_tokens(mut self, issuer: Arc<TokenIssuer>) -> Self {
        self.service_account_tokens = Some(issuer);
        self
    }

    /// Authorize requests with `authorizer` (without it only `system:masters` may do
    /// anything).
    pub fn with_authorizer(mut self, authorizer: Authorizer) -> Self {
        self.authorizer = authorizer;
        self
    }

    /// Use these admission settings instead of upstream's defaults.
    pub fn with_admission(mut self, admission: admission::Admission) -> Self {
        self.admission = admission;
        self
    }

    /// Allocate ClusterIPs, NodePorts and podCIDRs from these pools.
    pub fn with_ipam(mut self, ipam: allocations::Ipam) -> Self {
        self.ipam = Some(Arc::new(ipam));
        self
    }

    /// Keep the `kube-system/kube-dns` Service at `cluster_ip`, its endpoint being the cluster
    /// DNS server at `server`.
    pub fn with_cluster_dns(mut self, cluster_ip: std::net::Ipv4Addr, server: SocketAddr) -> Self {
        self.cluster_dns = Some((cluster_ip, server));
        self
    }

    /// How to reach node agents (pods/log, exec, attach, portforward): trust and client
    /// certificate.
    pub fn with_kubelet_client(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.kubelet_tls = Some(tls);
        self
    }

    /// Creates the namespaces every cluster has (default, kube-system, kube-public,
    /// kube-node-lease), the system PriorityClasses (system-node-critical,
    /// system-cluster-critical) and the default StorageClass unless they exist, and the
    /// default RBAC roles and bindings.
    /// The system Services (`kubernetes`, `kube-dns`) come
    /// next, from [`Self::reconcile_system_services`].
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        for name in namespace::PROTECTED_NAMESPACES {
            let object =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            self.create_unless_present(&namespace::RESOURCE, object)
                .await?;
        }
        for (name, value, description) in priority_class::SYSTEM_PRIORITY_CLASSES {
            let object = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                                "metadata": {"name": name}, "value": value,
                                "description": description});
            self.create_unless_present(&priority_class::RESOURCE, object)
                .await?;
        }
        self.create_unless_present(&storage_class::RESOURCE, default_storage_class())
            .await?;
        crate::auth::rbac::bootstrap::reconcile(self).await?;
        gc::resume_pending(self).await
    }

    /// Creates a cluster-scoped object the cluster starts with, unless one of its name exists.
    async fn create_unless_present(
        &self,
        resource: &'static Resource,
        object: Value,
    ) -> Result<(), ApiError> {
        let scope = Scope {
            resource,
            namespace: None,
        };
        let name = meta::name(&object).to_owned();
        match self.create_object(&scope, object, &Query::default()).await {
            Ok(_) => {
                tracing::info!(kind = resource.kind, %name, "created");
                Ok(())
            }
            Err(err) if err.code == 409 => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Serves HTTPS on `listener` until the task is dropped.
    pub async fn serve(
        self,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<()> {
        let acceptor = TlsAcceptor::from(tls);
        loop {
            let (stream, peer) = listener.accept().await?;
            let acceptor = acceptor.clone();
            let server = self.clone();
            tokio::spawn(async move {
                if let Err(err) = server.serve_connection(acceptor, stream, peer).await {
                    tracing::debug!(%peer, "connection ended: {err}");
                }
            });
        }
    }

    async fn serve_connection(
        self,
        acceptor: TlsAcceptor,
        stream: tokio::net::TcpStream,
        peer: SocketAddr,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let tls = acceptor.accept(stream).await?;
        let certificate_user = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(user_from_certificate);
        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let server = self.clone();
            let user = certificate_user.clone();
            async move {
                let response = server.handle(user, request).await;
                Ok::<_, std::convert::Infallible>(response)
            }
        });
        tracing::trace!(%peer, "TLS connection accepted");
        // Upgrades carry exec, attach and port-forward sessions.
        auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(tls), service)
            .await
    }

    /// The user a bootstrap token authenticates as, judged by its Secret (None: 401; why is
    /// logged at debug only).
    async fn bootstrap_token_user(&self, id: &str, secret: &str) -> Option<User> {
        use flotilla_apimachinery::bootstrap;
        let name = format!("{}{id}", bootstrap::SECRET_PREFIX);
        let key = registry::core::secret::RESOURCE.key(Some(bootstrap::NAMESPACE), &name);
        let Ok(stored) = self.store.get(&key).await else {
            tracing::debug!("bootstrap token refused: no secret {name}");
            return None;
        };
        crate::auth::bootstrap_tokens::user_of(&stored.object, id, secret, jiff::Timestamp::now())
            .map_err(|why| tracing::debug!("bootstrap token refused: {why}"))
            .ok()
    }

    /// Authenticates and answers one request.
    pub async fn handle<B>(&self, certificate_user: Option<User>, request: Request<B>) -> Response
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        let public = matches!(
            path.as_str(),
            "/healthz" | "/livez" | "/readyz" | "/version"
        );
        let bearer = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(|token| token.trim().to_owned());
        let no_credentials = certificate_user.is_none() && bearer.is_none();
        let user = match (certificate_user, bearer) {
            (Some(user), _) => Some(user),
            (None, Some(token)) => match self.tokens.authenticate(&token) {
                Some(user) => Some(user),
                None => match flotilla_apimachinery::bootstrap::parse_token(&token) {
                    Some((id, secret)) => self.bootstrap_token_user(id, secret).await,
                    None if service_accounts::looks_like_jwt(&token) => {
                        self.service_account_user(&token).await
                    }
                    None => None,
                },
            },
            (None, None) => None,
        };
        let encoding = negotiation::output(
            request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok()),
        );
        // The query string is read once, for authorization and for the request itself.
        let mut query = Query::parse(request.uri().query()).with_user_agent(
            request
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        );
        let user = match user {
            Some(user) => match self.authorize(authenticated(user), &request, &query) {
                Ok(user) => Some(Arc::new(user)),
                Err(err) => return negotiation::error_response(encoding, err),
            },
            None if public => None,
            // A request without credentials is system:anonymous, served only where a binding
            // lets anonymous users in (kube-public/cluster-info); anywhere else it is 401.
            None if no_credentials => match self.authorize(anonymous(), &request, &query) {
                Ok(user) => Some(Arc::new(user)),
                Err(_) => return ApiError::unauthorized().into_response(),
            },
            None => return ApiError::unauthorized().into_response(),
        };
        if let Some(user) = &user {
            query = query.with_requester(Arc::clone(user));
        }
        let started = std::time::Instant::now();
        let response = warnings::recorded(async {
            match self.route(request, query).await {
                Ok(response) => response,
                Err(err) => negotiation::error_response(encoding, err),
            }
        })
        .await;
        tracing::debug!(
            user = user.as_ref().map(|u| u.name.as_str()).unwrap_or("-"),
            %method,
            %path,
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        );
        response
    }

    /// The user `authenticated` acts as (after impersonation), if RBAC lets them make
    /// `request`.
    fn authorize<B>(
        &self,
        authenticated: User,
        request: &Request<B>,
        query: &Query,
    ) -> Result<User, ApiError> {
        let user = authenticated;
        let requester = user.clone();
        let user = impersonation::impersonate(&self.authorizer, user, request.headers()).map_err(
            |refusal| match refusal {
                Refusal::Forbidden { attributes, reason } => {
                    ApiError::denied(&attributes, &requester, &reason)
                }
                Refusal::BadRequest(message) => ApiError::bad_request(message),
            },
        )?;
        let attributes = request_info::attributes(request.method(), request.uri().path(), query);
        self.authorizer
            .authorize(&user, &attributes)
            .map_err(|reason| ApiError::denied(&attributes, &user, &reason))?;
        Ok(user)
    }

    async fn route<B>(&self, request: Request<B>, query: Query) -> Result<Response, ApiError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let path = request.uri().path().trim_end_matches('/').to_owned();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let method = request.method().clone();
        let get = method == Method::GET;
        match segments.as_slice() {
            ["healthz" | "livez" | "readyz"] => {
                return Ok((StatusCode::OK, "ok").into_response());
            }
            ["version"] if get => {
                return Ok(json_response(StatusCode::OK, &discovery::version()));
            }
            ["api" | "apis"] if get => {
                let core = segments == ["api"];
                let accept = request
                    .headers()
                    .get(header::ACCEPT)
                    .and_then(|v| v.to_str().ok());
                let (document, content_type) = match discovery::aggregated_version(accept) {
                    Some(version) => (
                        discovery::aggregated(&self.registry, core, version),
                        Some(discovery::aggregated_content_type(version)),
                    ),
                    None if core => (discovery::core_versions(&self.advertise), None),
                    None => (discovery::group_list(&self.registry), None),
                };
                let mut response = json_response(StatusCode::OK, &document);
                let headers = response.headers_mut();
                if let Some(value) = content_type.and_then(|t| http::HeaderValue::from_str(&t).ok())
                {
                    headers.insert(header::CONTENT_TYPE, value);
                }
                // The answer depends on Accept, so caches must key on it.
                headers.insert(header::VARY, http::HeaderValue::from_static("Accept"));
                return Ok(response);
            }
            [".well-known", "openid-configuration"] if get => {
                return Ok(json_response(
                    StatusCode::OK,
                    &service_accounts::openid_configuration(),
                ));
            }
            ["openid", "v1", "jwks"] if get => {
                let issuer = self
                    .service_account_tokens
                    .as_ref()
                    .ok_or_else(|| ApiError::no_route(&path))?;
                let mut response = json_response(StatusCode::OK, &issuer.jwks());
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/jwk-set+json"),
                );
                return Ok(response);
            }
            ["openapi", "v2"] if get => {
                return Ok(self.openapi.v2(&self.registry, request.headers()));
            }
            ["openapi", "v3"] if get => {
                return Ok(self.openapi.v3_index(&self.registry, request.headers()));
            }
            ["openapi", "v3", rest @ ..] if get => {
                return self
                    .openapi
                    .v3(
                        &self.registry,
                        &rest.join("/"),
                        query.get("hash"),
                        request.headers(),
                    )
                    .ok_or_else(|| ApiError::no_route(&path));
            }
            ["api", "v1"] if get => {
                return discovery::resource_list(&self.registry, "", "v1")
                    .map(|list| json_response(StatusCode::OK, &list))
                    .ok_or_else(|| ApiError::no_route(&path));
            }
            ["apis", group] if get => {
                return discovery::group(&self.registry, group)
                    .map(|document| json_response(StatusCode::OK, &document))
                    .ok_or_else(|| ApiError::no_route(&path));
            }
            ["apis", group, version] if get => {
                return discovery::resource_list(&self.registry, group, version)
                    .map(|list| json_response(StatusCode::OK, &list))
                    .ok_or_else(|| ApiError::no_route(&path));
            }
            _ => {}
        }
        let (group, version, rest) = match segments.as_slice() {
            ["api", "v1", rest @ ..] => ("", "v1", rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return Err(ApiError::no_route(&path)),
        };
        let target = parse_target(&self.registry, group, version, rest)
            .ok_or_else(|| ApiError::no_route(&path))?;
        self.dispatch(target, request, query).await
    }

    /// Answers a request on a resource; `query` is its query string, User-Agent and user.
    async fn dispatch<B>(
        &self,
        target: Target,
        request: Request<B>,
        query: Query,
    ) -> Result<Response, ApiError>
    where
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let (Some(kind), Some(name), Some(namespace)) = (
            target.subresource.and_then(streaming_kind),
            target.name.as_deref(),
            target.namespace.as_ref(),
        ) {
            // Streaming requests keep their connection (for the upgrade) and have no body.
            if !matches!(*request.method(), Method::GET | Method::POST) {
                return Err(ApiError::method_not_allowed(
                    request.method().as_str(),
                    &format!("pods/{}", target.subresource.map_or("", Subresource::name)),
                ));
            }
            let scope = Scope {
                resource: target.resource,
                namespace: Some(namespace.clone()),
            };
            return self.pod_stream(&scope, name, kind, request).await;
        }
        let (parts, body) = request.into_parts();
        let accept = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok());
        let rendering = rendering(accept);
        let encoding = negotiation::output(accept);
        let respond = |code, body: &Value| negotiation::respond(encoding, code, body);
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Refuse oversized bodies from their declared length, before reading them: a client that
        // sent `Expect: 100-continue` then gets the 413 instead of a reset connection.
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|length| length > MAX_BODY_BYTES) {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
        let body = read_body(body).await?;
        let resource = target.resource;
        let scope = Scope {
            resource,
            namespace: target.namespace.clone(),
        };
        let all_namespaces = resource.namespaced && target.namespace.is_none();
        let method = parts.method;
        let what = resource.qualified_name();

        if resource.strategy.is_review() {
            if method != Method::POST || target.name.is_some() || all_namespaces {
                return Err(ApiError::method_not_allowed(method.as_str(), &what));
            }
            let object = decode_body(&body, content_type.as_deref())?;
            let answered = self.answer_review(&scope, object, &query).await?;
            return Ok(respond(StatusCode::CREATED, &answered));
        }
        match (&method, target.name.as_deref(), target.subresource) {
            (&Method::GET, None, None) => {
                if query.flag("watch") {
                    let stream = self
                        .watch_objects(&scope, &query, rendering, encoding)
                        .await?;
                    return Ok(Response::builder()
                        .status(StatusCode::OK)
                        .header(
                            header::CONTENT_TYPE,
                            negotiation::watch_content_type(encoding),
                        )
                        .header(header::CACHE_CONTROL, "no-cache, private")
                        .body(Body::from_stream(stream))
                        .unwrap_or_else(|_| {
                            ApiError::internal("building the watch response").into_response()
                        }));
                }
                let list = self.list_objects(&scope, &query, rendering).await?;
                Ok(respond(StatusCode::OK, &list))
            }
            (_, _, _) if all_namespaces => Err(ApiError::method_not_allowed(
                method.as_str(),
                &format!("{what} across all namespaces; address one namespace"),
            )),
            (&Method::POST, None, None) => {
                let object = decode_body(&body, content_type.as_deref())?;
                let written = self.create_object(&scope, object, &query).await?;
                Ok(written_response(encoding, StatusCode::CREATED, written))
            }
            (&Method::DELETE, None, None) => {
                let options_body = decode_optional(&body, content_type.as_deref())?;
                let options = DeleteOptions::parse(options_body.as_ref(), &query)?;
                let list = self.delete_collection(&scope, &query, &options).await?;
                Ok(respond(StatusCode::OK, &list))
            }
            (
                &Method::GET,
                Some(name),
                None | Some(Subresource::Status | Subresource::Approval),
            ) => {
                let stored = self.get_object(&scope, name).await?;
                let body = match rendering {
                    query::Rendering::Table => handlers::table(
                        resource,
                        &[stored.object],
                        json!({"resourceVersion": stored.revision.to_string()}),
                        &query,
                    ),
                    query::Rendering::Metadata => query::partial_metadata(&stored.object),
                    query::Rendering::Object => stored.object,
                };
                Ok(respond(StatusCode::OK, &body))
            }
            (
                &Method::PUT,
                Some(name),
                None | Some(Subresource::Status | Subresource::Approval),
            ) => {
                let object = decode_body(&body, content_type.as_deref())?;
                let written = self
                    .replace_object(&scope, name, object, &query, target.subresource)
                    .await?;
                Ok(written_response(encoding, StatusCode::OK, written))
            }
            (
                &Method::PATCH,
                Some(name),
                None | Some(Subresource::Status | Subresource::Approval),
            ) => {
                let written = self
                    .patch_object(
                        &scope,
                        name,
                        content_type.as_deref(),
                        &body,
                        &query,
                        target.subresource,
                    )
                    .await?;
                // An apply creates the object when there is none, and says so.
                let code = if written.created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                };
                Ok(written_response(encoding, code, written))
            }
            (&Method::DELETE, Some(name), None) => {
                let options_body = decode_optional(&body, content_type.as_deref())?;
                let options = DeleteOptions::parse(options_body.as_ref(), &query)?;
                let (code, body) = self.delete_object(&scope, name, &options).await?;
                let code = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
                Ok(respond(code, &body))
            }
            (&Method::GET, Some(name), Some(Subresource::Scale)) => {
                let scale = self.get_scale(&scope, name).await?;
                Ok(respond(StatusCode::OK, &scale))
            }
            (&Method::PUT | &Method::PATCH, Some(name), Some(Subresource::Scale)) => {
                let scale = self
                    .write_scale(
                        &scope,
                        name,
                        &method,
                        content_type.as_deref(),
                        &body,
                        &query,
                    )
                    .await?;
                Ok(respond(StatusCode::OK, &scale))
            }
            (&Method::GET, Some(name), Some(Subresource::Log)) => {
                self.pod_logs(&scope, name, &query).await
            }
            (&Method::POST, Some(name), Some(Subresource::Eviction)) => {
                let eviction = decode_body(&body, content_type.as_deref())?;
                let status = self.evict_pod(&scope, name, &eviction, &query).await?;
                Ok(respond(StatusCode::CREATED, &status))
            }
            (&Method::POST, Some(name), Some(Subresource::Token)) => {
                let request = decode_body(&body, content_type.as_deref())?;
                let answered = self
                    .request_token(&scope, name, request, query.requester())
                    .await?;
                Ok(respond(StatusCode::CREATED, &answered))
            }
            (&Method::POST, Some(name), Some(Subresource::Binding)) => {
                let binding = decode_body(&body, content_type.as_deref())?;
                let status = self.bind_pod(&scope, name, &binding, &query).await?;
                Ok(respond(StatusCode::CREATED, &status))
            }
            (method, _, subresource) => Err(ApiError::method_not_allowed(
                method.as_str(),
                &match subresource {
                    Some(sub) => format!("{what}/{}", sub.name()),
                    None => what.clone(),
                },
            )),
        }
    }
}

/// An authenticated user is in `system:authenticated` too.
fn authenticated(mut user: User) -> User {
    if !user.groups.iter().any(|g| g == "system:authenticated") {
        user.groups.push("system:authenticated".to_owned());
    }
    user
}

/// Who a request without credentials is.
fn anonymous() -> User {
    User {
        name: "system:anonymous".to_owned(),
        groups: vec!["system:unauthenticated".to_owned()],
    }
}

/// The streaming subresources (exec, attach, port-forward).
fn streaming_kind(subresource: Subresource) -> Option<streaming::StreamKind> {
    match subresource {
        Subresource::Exec => Some(streaming::StreamKind::Exec),
        Subresource::Attach => Some(streaming::StreamKind::Attach),
        Subresource::PortForward => Some(streaming::StreamKind::PortForward),
        _ => None,
    }
}

/// What a resource path addresses.
#[derive(Debug, Clone)]
struct Target {
    resource: &'static Resource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<Subresource>,
}

/// Parses the path below `/api/v1` or `/apis/<group>/<version>`.
fn parse_target(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Option<Target> {
    let (namespace, rest) = match rest {
        ["namespaces", namespace, plural, tail @ ..]
            if !matches!(*plural, "status" | "finalize") =>
        {
            (Some((*namespace).to_owned()), {
                let mut v = vec![*plural];
                v.extend_from_slice(tail);
                v
            })
        }
        other => (None, other.to_vec()),
    };
    let (plural, name, subresource) = match rest.as_slice() {
        [plural] => (*plural, None, None),
        [plural, name] => (*plural, Some((*name).to_owned()), None),
        [plural, name, sub] => (*plural, Some((*name).to_owned()), Some(*sub)),
        _ => return None,
    };
    let resource = registry.find(group, version, plural)?;
    if namespace.is_some() && !resource.namespaced {
        return None;
    }
    let subresource = match subresource {
        None => None,
        Some(sub) => Some(
            resource
                .subresources
                .iter()
                .copied()
                .find(|candidate| candidate.name() == sub)?,
        ),
    };
    Some(Target {
        resource,
        namespace,
        name,
        subresource,
    })
}

async fn read_body<B>(body: B) -> Result<bytes::Bytes, ApiError>
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => {
            Err(ApiError::too_large(MAX_BODY_BYTES))
        }
        Err(err) => Err(ApiError::bad_request(format!(
            "reading the request body: {err}"
        ))),
    }
}

/// A JSON response (discovery, OpenAPI, version: documents served only as JSON).
fn json_response(code: StatusCode, body: &Value) -> Response {
    negotiation::respond(Encoding::Json, code, body)
}

fn written_response(encoding: Encoding, code: StatusCode, written: Written) -> Response {
    negotiation::respond(encoding, code, &written.object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_resolve_to_resources() {
        let target = parse_target(
            &Registry::new(),
            "",
            "v1",
            &["namespaces", "default", "pods", "web", "status"],
        )
        .unwrap();
        assert_eq!(target.resource.plural, "pods");
        assert_eq!(target.namespace.as_deref(), Some("default"));
        assert_eq!(target.name.as_deref(), Some("web"));
        assert_eq!(target.subresource, Some(Subresource::Status));

        let target = parse_target(&Registry::new(), "", "v1", &["namespaces", "prod"]).unwrap();
        assert_eq!(target.resource.plural, "namespaces");
        assert_eq!(target.name.as_deref(), Some("prod"));
        assert!(target.namespace.is_none());

        let target = parse_target(
            &Registry::new(),
            "",
            "v1",
            &["namespaces", "prod", "status"],
        )
        .unwrap();
        assert_eq!(target.subresource, Some(Subresource::Status));

        let target = parse_target(&Registry::new(), "apps", "v1", &["deployments"]).unwrap();
        assert!(target.namespace.is_none(), "all namespaces");

        assert!(parse_target(&Registry::new(), "", "v1", &["namespaces", "x", "nodes"]).is_none());
        assert!(parse_target(&Registry::new(), "", "v1", &["pods", "a", "nonsense"]).is_none());
        assert!(parse_target(&Registry::new(), "apps", "v1", &["widgets"]).is_none());
    }
}
