#include "pkg01/l01_05.h"
#include "pkg01/l01_04.h"
#include <algorithm>
#include <numeric>

namespace l01_05 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 4) ^ (b + 14); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 14, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 2 == 0; }));
  total += l01_04::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_05:" + std::to_string(score({seed, seed * 4, 14}));
}
}  // namespace l01_05
