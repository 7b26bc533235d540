plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
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
        ndk { abiFilters += listOf("arm64-v8a") }
    }
    // Models are memory-mapped straight from the APK: keep them uncompressed.
    androidResources { noCompress += listOf("onnx", "tflite", "npy", "bin") }
    compileOptions { sourceCompatibility = JavaVersion.VERSION_1_8; targetCompatibility = JavaVersion.VERSION_1_8 }
    kotlinOptions { jvmTarget = "1.8" }
}

dependencies {
    implementation(project(":core"))
    // QNN build of ONNX Runtime: CPU EP everywhere, QNN EP (HTP) on Snapdragon.
    implementation("com.microsoft.onnxruntime:onnxruntime-android-qnn:1.22.0")
    // LiteRT: CPU (XNNPACK) everywhere, NPU through the vendor dispatch library on Dimensity / Snapdragon.
    implementation("com.google.ai.edge.litert:litert:2.0.2")
    implementation("androidx.appcompat:appcompat:1.7.0")
    implementation("androidx.recyclerview:recyclerview:1.3.2")
}
