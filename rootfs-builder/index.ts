// rootfs-builder: OCI image layouts and docker-archives to runnable bundles.
export { ImageError } from './errors.js';
export { createBundle, ensureCachedBundle, removePartialBuilds, cacheRoot, type BuildOptions, type BuildResult, type LayerProgress } from './build.js';
export { resolveImage, parsePlatform, type ResolvedImage, type ImageConfig } from './image.js';
export { openSource } from './source.js';
export { imageSpec, resolveUser, readFileInRoot } from './config.js';
export { makeBusyboxBundle } from './example-bundle.js';
