// The one error type rootfs-builder throws for anything wrong with an image,
// an archive or a destination: a single line that names the problem, never a
// stack trace or a multi-line dump.
export class ImageError extends Error {
  constructor(message: string) {
    super(message.replace(/\s*\n\s*/g, ' ').trim());
    this.name = 'ImageError';
  }
}

/** errno code of a Node fs error, if it is one. */
export function errCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

/** Turns any error into an ImageError, prefixing `context` unless it is one already. */
export function asImageError(err: unknown, context: string): ImageError {
  if (err instanceof ImageError) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new ImageError(`${context}: ${msg}`);
}
