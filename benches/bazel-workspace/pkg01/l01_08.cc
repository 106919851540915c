#include "pkg01/l01_08.h"
#include "pkg01/l01_07.h"
#include <algorithm>
#include <numeric>

namespace l01_08 {
namespace {
template <typename T>
T mix(T a, T b) { return (a * 7) ^ (b + 17); }
}  // namespace

int score(const std::vector<int>& xs) {
  std::vector<int> ys(xs);
  std::sort(ys.begin(), ys.end());
  int total = std::accumulate(ys.begin(), ys.end(), 17, mix<int>);
  total += static_cast<int>(std::count_if(ys.begin(), ys.end(), [](int y) { return y % 5 == 0; }));
  total += l01_07::score(xs);
  return total;
}

std::string describe(int seed) {
  return "l01_08:" + std::to_string(score({seed, seed * 7, 17}));
}
}  // namespace l01_08
