//! What a minion holds of images, and loading one into it (`crate::images` sends only what it
//! lacks): through the Docker API over the minion's usual transport, nothing installed there.

use super::{Minion, MinionError};
use bytes::Bytes;
use futures_util::{Stream, TryStreamExt};

impl Minion {
    /// The id of the image `name` on this minion, or `None` when it has none by that name.
    pub async fn image_id(&self, name: &str) -> Result<Option<String>, MinionError> {
        Ok(self.inspect_image(name).await?.and_then(|image| image.id))
    }

    /// The layers (diff ids, bottom first) of every image this minion holds (asked of all at
    /// once; one removed between the list and its inspection is left out).
    pub async fn image_layers(&self) -> Result<Vec<Vec<String>>, MinionError> {
        let options = bollard::query_parameters::ListImagesOptionsBuilder::new()
            .all(true)
            .build();
        let images = self
            .call("list images", self.docker().list_images(Some(options)))
            .await?;
        let inspections = images.iter().map(|image| self.inspect_image(&image.id));
        let mut all = Vec::new();
        for inspected in futures_util::future::join_all(inspections).await {
            if let Some(image) = inspected? {
                all.push(image.root_fs.and_then(|r| r.layers).unwrap_or_default());
            }
        }
        Ok(all)
    }

    /// Feeds a `docker save` stream to `docker load` here, as it comes. Docker tags the image
    /// only once the whole stream is in, so a stream that ends early leaves no image.
    pub async fn load_image<S>(&self, image: &str, tar: S) -> Result<(), MinionError>
    where
        S: Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static,
    {
        let options = bollard::query_parameters::ImportImageOptionsBuilder::new()
            .quiet(true)
            .build();
        // Docker answers a quiet load only once all of it is in: bollard's own wait for the
        // answer's headers (a minute on minions) must be as long as the transfer may take.
        let docker = self
            .docker()
            .clone()
            .with_timeout(super::ops::TRANSFER_TIMEOUT);
        let answers = docker.import_image_stream(options, tar, None);
        self.call_within(
            &format!("load image {image}"),
            super::ops::TRANSFER_TIMEOUT,
            answers.try_for_each(|_| async { Ok(()) }),
        )
        .await
    }
}
