plugins {
    id("com.android.application")
}

android {
    namespace = "ai.mcad.demo"
    compileSdk = 35
    defaultConfig {
        applicationId = "ai.mcad.demo"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        ndk { abiFilters += listOf("arm64-v8a", "x86_64") }
    }
    // The LiteRT text encoder needs LiteRT's library, a dependency of this build only: `mcad-export apk` (offline,
    // ONNX Runtime only) compiles src/main/java without it, and TextEncoder.open says so when asked for LiteRT.
    sourceSets["main"].java.srcDir("src/litert/java")
    // Models are memory-mapped straight from the APK: keep them uncompressed.
    androidResources { noCompress += listOf("onnx", "tflite", "npy", "bin") }
    compileOptions { sourceCompatibility = JavaVersion.VERSION_1_8; targetCompatibility = JavaVersion.VERSION_1_8 }
}

dependencies {
    implementation(project(":core"))
    // QNN build of ONNX Runtime: CPU EP everywhere, QNN EP (HTP) on Snapdragon.
    implementation("com.microsoft.onnxruntime:onnxruntime-android-qnn:1.22.0")
    // LiteRT: CPU (XNNPACK) everywhere, NPU through the vendor dispatch library on Dimensity / Snapdragon.
    implementation("com.google.ai.edge.litert:litert:2.0.2")
    // Platform widgets only (Activity, GridView): the same sources build offline, where no AndroidX is reachable.
}
